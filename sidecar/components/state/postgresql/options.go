package postgresql

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outrigger-dev/outrigger/sidecar/components"
	"github.com/outrigger-dev/outrigger/sidecar/components/metadata"
)

// options are the component's metadata: Dapr's postgresql v1 names and defaults
// (components-contrib state/postgresql/v1/metadata.yaml and
// common/component/postgresql/v1/metadata.go).
type options struct {
	ConnectionString string `metadata:"connectionString" required:"true"`
	// TableName and MetadataTableName may carry a schema ("public.state").
	TableName         string `metadata:"tableName" default:"state"`
	MetadataTableName string `metadata:"metadataTableName" default:"dapr_metadata"`
	// Timeout bounds every database operation (default 20s, at least 1s).
	// timeoutInSeconds is Dapr's older name, used when timeout is absent.
	Timeout          time.Duration `metadata:"timeout" default:"20s" unit:"s"`
	TimeoutInSeconds *int64        `metadata:"timeoutInSeconds"`
	// CleanupInterval is how often expired rows are deleted (default 1h); zero or
	// negative disables it. cleanupIntervalInSeconds is Dapr's older name.
	CleanupInterval          time.Duration `metadata:"cleanupInterval" default:"1h" unit:"s"`
	CleanupIntervalInSeconds *int64        `metadata:"cleanupIntervalInSeconds"`
	// MaxConns caps the pool and ConnectionMaxIdleTime closes connections idle for
	// longer; zero or less keeps the connection string's pool_max_conns and
	// pool_max_conn_idle_time, else pgxpool's defaults (the greater of 4 and the
	// number of CPUs; 30 minutes). QueryExecMode, when set, overrides the connection
	// string's default_query_exec_mode.
	MaxConns              int32         `metadata:"maxConns"`
	ConnectionMaxIdleTime time.Duration `metadata:"connectionMaxIdleTime" unit:"s"`
	QueryExecMode         string        `metadata:"queryExecMode"`
	ActorStateStore       bool          `metadata:"actorStateStore"`

	// Resolved from the above by parseOptions.
	table     string // quoted, schema-qualified when given
	metaTable string
	indexName string // quoted, unqualified: an index lives in its table's schema
	execMode  pgx.QueryExecMode
}

func parseOptions(md components.Metadata) (options, error) {
	var o options
	if err := metadata.Decode(md.Properties, &o); err != nil {
		return o, err
	}
	// The older *InSeconds names apply only when the current name is absent.
	if _, set := md.Property("timeout"); !set && o.TimeoutInSeconds != nil {
		o.Timeout = time.Duration(*o.TimeoutInSeconds) * time.Second
	}
	if _, set := md.Property("cleanupInterval"); !set && o.CleanupIntervalInSeconds != nil {
		o.CleanupInterval = time.Duration(*o.CleanupIntervalInSeconds) * time.Second
	}
	return o, o.resolve()
}

// resolve validates the options and fills the derived fields; each error names its
// property.
func (o *options) resolve() error {
	var errs []error
	if strings.TrimSpace(o.ConnectionString) == "" {
		errs = append(errs, errors.New(`metadata "connectionString" is required`))
	}
	if o.Timeout < time.Second {
		errs = append(errs, fmt.Errorf(`metadata "timeout": %s is below the minimum of 1s`, o.Timeout))
	}
	var err error
	if o.table, err = tableIdentifier(o.TableName); err != nil {
		errs = append(errs, fmt.Errorf(`metadata "tableName": %w`, err))
	}
	if o.metaTable, err = tableIdentifier(o.MetadataTableName); err != nil {
		errs = append(errs, fmt.Errorf(`metadata "metadataTableName": %w`, err))
	}
	if o.table != "" && o.table == o.metaTable {
		errs = append(errs, fmt.Errorf(`metadata "tableName" and "metadataTableName" are both %q`, o.TableName))
	}
	if o.table != "" {
		parts := strings.Split(strings.ToLower(o.TableName), ".")
		name := parts[len(parts)-1] + "_expiredate_idx"
		if len(name) > 63 {
			name = name[len(name)-63:]
		}
		o.indexName = pgx.Identifier{name}.Sanitize()
	}
	switch strings.ToLower(o.QueryExecMode) {
	case "":
		o.execMode = pgx.QueryExecModeCacheStatement
	case "cache_statement":
		o.execMode = pgx.QueryExecModeCacheStatement
	case "cache_describe":
		o.execMode = pgx.QueryExecModeCacheDescribe
	case "describe_exec":
		o.execMode = pgx.QueryExecModeDescribeExec
	case "exec":
		o.execMode = pgx.QueryExecModeExec
	case "simple_protocol":
		o.execMode = pgx.QueryExecModeSimpleProtocol
	default:
		errs = append(errs, fmt.Errorf(`metadata "queryExecMode": %q must be one of cache_statement, cache_describe, describe_exec, exec, simple_protocol`, o.QueryExecMode))
	}
	return errors.Join(errs...)
}

// tableIdentifier quotes "table" or "schema.table" for SQL. Dapr writes the name into
// its SQL unquoted, so PostgreSQL folds it to lower case; to address the same table,
// the name must be a plain identifier, and it is folded the same way before quoting.
func tableIdentifier(name string) (string, error) {
	parts := strings.Split(name, ".")
	if len(parts) > 2 {
		return "", fmt.Errorf("%q has more than a schema and a table name", name)
	}
	for i, p := range parts {
		if !plainIdentifier(p) {
			return "", fmt.Errorf("%q must be letters, digits, underscores and dollar signs, starting with a letter or underscore, at most 63 characters, optionally prefixed by a schema and a dot", name)
		}
		parts[i] = strings.ToLower(p)
	}
	return pgx.Identifier(parts).Sanitize(), nil
}

func plainIdentifier(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case i > 0 && (r >= '0' && r <= '9' || r == '$'):
		default:
			return false
		}
	}
	return true
}
