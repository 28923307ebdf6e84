"""Models of recbole_llm. ``Foo`` lives in ``foo.py`` so that get_model finds it."""
