from paradis_cli import main

raise SystemExit(main())
