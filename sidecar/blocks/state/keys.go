package state

import (
	"fmt"
	"strings"
)

// Separator joins a key prefix and the app's key, as Dapr stores them.
const Separator = "||"

// Key prefix strategies of the keyPrefix metadata.
const (
	PrefixAppID     = "appid"
	PrefixName      = "name"
	PrefixNamespace = "namespace"
	PrefixNone      = "none"
)

// keyPrefix returns the prefix (without the separator) for a store, or "" when keys go
// unprefixed.
//
// Dapr lower-cases the keyPrefix value before using it, so a literal prefix
// "MyPrefix" stores keys as "myprefix||key"; we match it, or data written by Dapr would
// be invisible to us. Dapr also falls back to no prefix when the app id is empty, and
// from "namespace" to the app id alone when the namespace is.
func (b *Block) keyPrefix(store string, h Handle) (string, error) {
	strategy := strings.ToLower(h.KeyPrefix)
	switch strategy {
	case "", PrefixAppID:
		return b.AppID, nil
	case PrefixNone:
		return "", nil
	case PrefixName:
		return store, nil
	case PrefixNamespace:
		if b.AppID == "" {
			return "", nil
		}
		if b.Namespace == "" {
			return b.AppID, nil
		}
		return b.Namespace + "." + b.AppID, nil
	}
	if strings.Contains(strategy, Separator) {
		return "", errIllegalKey(store, strategy)
	}
	return strategy, nil
}

// storeKey checks an app key and prefixes it.
func storeKey(store, prefix, key string) (string, error) {
	if key == "" {
		return "", errEmptyKey(store)
	}
	// Dapr refuses the separator in every key, even with keyPrefix none, where it
	// would be harmless: the original key could not be recovered from a stored one.
	if strings.Contains(key, Separator) {
		return "", errIllegalKey(store, key)
	}
	if prefix == "" {
		return key, nil
	}
	return prefix + Separator + key, nil
}

func illegalKeyMessage(key string) string {
	return fmt.Sprintf("input key/keyPrefix '%s' can't contain '%s'", key, Separator)
}
