"""The harness behind ``python -m benchmarks.run``: it runs the scenario programs and publishes.

Its modules, in the order a run uses them (:mod:`benchmarks.run` is the command line):

* :mod:`~benchmarks.suite.plan`: what a run measures, in which sizes and order;
* :mod:`~benchmarks.suite.measure`: the servers, and each program run on a fresh
  database, with progress lines;
* :mod:`~benchmarks.suite.machine`: what the figures were measured on;
* :mod:`~benchmarks.suite.publish`: the JSON, the plots and the performance page, made
  by :mod:`benchmarks.report`;
* :mod:`~benchmarks.suite.paths`: where all that is read and written.
"""
