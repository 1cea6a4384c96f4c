"""The run layer: what turns the lesson's training step and loops into commands a learner can run.

Command lines, argument checks, run folders and their resume state, distributed processes and
stop signals live here, above the lesson modules; the lesson modules never import this package.
"""
