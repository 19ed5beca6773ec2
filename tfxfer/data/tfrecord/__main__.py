"""``python -m tfxfer.data.tfrecord --data FOLDER --output DIR``: writes the shards."""

from tfxfer.data.tfrecord.write import main

raise SystemExit(main())
