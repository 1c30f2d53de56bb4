from tests.conftest import *  # noqa: F401,F403  (personas, helpers, eager switch)
