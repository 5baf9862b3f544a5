"""The instructors' grading tools: the ``course`` command, the grading sandbox and the graded-cell rules.

Students never need this package (``pip install seglabs`` gives them ``helpers`` only); instructors install
it with the ``grading`` extra. Nothing in it runs inside a student's kernel.
"""
