# HTTP test helpers shared by the r-services (start_test_service, http_post...).
source(file.path("..", "..", "..", "common", "testing.R"))
