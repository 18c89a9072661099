"""The book's own helpers and policy, kept apart from the `googlenet` library.

Chapters import this module from their own folder (`import booktools`): the notebooks run with the
chapter's folder as the working directory, locally, in the book build, under nbval and in Colab.
"""
