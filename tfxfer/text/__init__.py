"""Text transfer learning on KerasHub encoders: the ``text_classify`` recipe's parts.

- :mod:`tfxfer.text.wordpiece`: BERT's WordPiece tokenizer in core TensorFlow ops;
- :mod:`tfxfer.text.data`: labelled text from folders of ``.txt`` files, CSV/TSV or SST-2;
- :mod:`tfxfer.text.encoder`: a preset's encoder with a new head;
- :mod:`tfxfer.text.scope`: what trains in a phase (frozen parts without dropout), and at what rate;
- :mod:`tfxfer.text.lora`: Keras's LoRA on the encoder, and training on after a reload;
- :mod:`tfxfer.text.batches`: token ids once, then batches of similar length, padded per batch;
- :mod:`tfxfer.text.train`: the trainer (the image core's phases, checkpoints and outputs);
- :mod:`tfxfer.text.serving`: the SavedModel that takes raw strings.

KerasHub is an optional install (``tfxfer[text]``, see docs/text.md), imported only when a text
run starts: ``import tfxfer`` imports :mod:`tfxfer.text.encoder` (to register its pooling layer
for ``model.keras``) and the tokenizer, which need only Keras and TensorFlow.
"""
