from policies.cli import main

main()
