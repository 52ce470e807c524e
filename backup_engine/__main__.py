from backup_engine.cli import main

main()
