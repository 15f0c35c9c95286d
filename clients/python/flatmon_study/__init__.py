"""flatmon_study: Jiang et al. (2020)-style replication of the relative-flatness generalisation claim on
scikit-learn's digits, through flatmon's real pipeline (bin/flatmon serve + FlatmonMonitor + ResultsReader,
and bin/flatmon compute --eigen for λ_max). Entry point: scripts/study/run (python -m flatmon_study)."""
