from imagerec.cli import main

raise SystemExit(main())
