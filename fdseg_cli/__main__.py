from fdseg_cli.main import main

main()
