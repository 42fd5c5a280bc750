"""Deploy tests: playbooks converged on this machine, Molecule hosts, the Vagrant lab."""
