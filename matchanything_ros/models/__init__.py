"""Network implementations; ``eloftr`` holds MatchAnything-ELoFTR written for deployment."""
