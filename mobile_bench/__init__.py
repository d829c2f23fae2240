"""artefact-bench: accuracy x latency x size of every shipped model across runtimes, with a CI gate."""
