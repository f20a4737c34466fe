"""The data path, in the order data flows through it:

* ``readers``    -- globs -> files (each read once) -> rows of parquet / jsonl(.gz) / JSON-list files.
* ``records``    -- pair and document records: the released FineInstructions layout, generic pair files, raw
  documents; bad rows counted, bad files a clear error.
* ``corpus``     -- the built-in corpus (the Python documentation every installation carries).
* ``tokenizer``  -- train/load the byte-level BPE; tokenizer identity by content hash.
* ``formatting`` -- a pair -> ``Instruction: ...\\n\\nAnswer: ...`` + EOS ids and the response-only mask.
* ``budget``     -- the token-for-token selection of pairs against their source documents.
* ``packing``    -- items -> fixed-length rows (best-fit decreasing) -> shards (Packer, ShardWriter).
* ``shards``     -- the on-disk arrays of a prepared directory and their reader.
* ``manifest``   -- ``manifest.json``, the typed description of a prepared directory (with its own checksum).
* ``integrity``  -- the checks of a prepared directory: cheap ones on every open, all of them for
  ``fitrain verify``.
* ``resume``     -- the resume state of a killed ``prepare``.
* ``prepare``    -- ``fitrain prepare``: all of the above, resumable.
* ``loader``     -- shards -> training batches (the batch contract, IGNORE_INDEX), resumable and rank-aware.
"""
