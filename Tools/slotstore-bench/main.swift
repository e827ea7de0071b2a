// Placeholder: the benchmark is being written (issue 5).
print("slotstore-bench: not implemented yet")
