"""Pure analyses over head scores (sparsity, similarity, activation frequency, case study) and their figures."""
