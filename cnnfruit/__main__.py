from cnnfruit.cli.group import main

main()
