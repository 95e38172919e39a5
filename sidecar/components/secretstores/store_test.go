package secretstores

import (
	"errors"
	"fmt"
	"testing"
)

func TestNotFound(t *testing.T) {
	err := fmt.Errorf("read: %w", NotFound("db"))
	if !errors.Is(err, ErrSecretNotFound) || err.Error() != `read: secret "db" not found` {
		t.Errorf("NotFound = %v", err)
	}
}
