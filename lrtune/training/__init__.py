"""What runs inside a trial: schedules, optimizers, models, batches, the reporter and checkpoints.

Nothing here imports Ray at module level; :mod:`lrtune.training.trial` is the
Tune trainable that ties the parts together.
"""
