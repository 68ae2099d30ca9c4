"""`python -m tickserve.predictors`: the predictor image's entry point, the same as `tickserve predictor`."""

import sys

from tickserve.predictors.cli import main

sys.exit(main())
