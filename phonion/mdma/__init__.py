"""phonion.mdma — sites (O_e / O_c / O_n), phonons, modes, MDMA, projected force constants."""
