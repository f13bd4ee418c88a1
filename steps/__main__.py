from steps.cli import main

raise SystemExit(main())
