"""Knowledge distillation: a finished run (the teacher) teaches a smaller student.

- :mod:`tfxfer.distill.teacher`: reads and checks the teacher's run directory, and settles the
  student's data from it (the runner's ``prepare`` hook);
- :mod:`tfxfer.distill.step`: the student's training step against the teacher's softened
  outputs;
- :mod:`tfxfer.distill.train`: the training core of the ``distill`` recipe.
"""
