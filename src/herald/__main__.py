from herald.cli.main import main

main()
