"""Engine ``ray``: Ray Tune trials over a local or an existing cluster, the Optuna study kept in the driver."""
