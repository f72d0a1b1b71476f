# One service instance for the whole suite; PROPHET_CORES = 2 exercises the
# forked parallel fits.
forecast_service <- start_test_service("r-forecast-plumber", env = c(PROPHET_CORES = "2"))
withr::defer(stop_test_service(forecast_service), teardown_env())
