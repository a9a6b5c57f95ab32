import os

from hypothesis import settings

# A fixed-seed profile: CI runs are reproducible; failures print the falsifying example.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
