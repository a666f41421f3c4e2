from rdiff.cli import main

raise SystemExit(main())
