from llm_orchestrator.cli.main import main

main()
