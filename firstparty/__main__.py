from firstparty.cli import main

raise SystemExit(main())
