package version

import (
	_ "github.com/dapr/dapr/pkg/proto/runtime/v1"
	_ "github.com/dapr/go-sdk/client"
	_ "github.com/jackc/pgx/v5"
	_ "github.com/redis/go-redis/v9"
	_ "modernc.org/sqlite"
)
