from backup_engine.entry import main

main()
