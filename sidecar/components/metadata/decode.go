// Package metadata decodes a component's metadata into its typed options struct, the
// one way every component reads its configuration. Fields are tagged
// `metadata:"redisHost"`; an optional `default:"..."` gives the value used when the
// property is absent, and `required:"true"` makes absence an error. A duration reads a
// Go duration ("5s") or a bare number, in milliseconds unless the field says
// `unit:"s"`: Dapr's components differ here, and each field follows its component. Names match
// case-insensitively, as Dapr matches them. Every error names the property.
package metadata

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Decode fills out (a pointer to a struct) from props.
func Decode(props map[string]string, out any) error {
	rv := reflect.ValueOf(out)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("metadata.Decode needs a pointer to a struct, got %T", out)
	}
	lower := make(map[string]string, len(props))
	for k, v := range props {
		lower[strings.ToLower(k)] = v
	}
	var errs []error
	decodeStruct(rv.Elem(), lower, &errs)
	return errors.Join(errs...)
}

func decodeStruct(v reflect.Value, props map[string]string, errs *[]error) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			decodeStruct(v.Field(i), props, errs)
			continue
		}
		name := f.Tag.Get("metadata")
		if name == "" || name == "-" {
			continue
		}
		raw, ok := props[strings.ToLower(name)]
		if !ok || strings.TrimSpace(raw) == "" {
			if def, has := f.Tag.Lookup("default"); has {
				raw, ok = def, true
			} else if f.Tag.Get("required") == "true" {
				*errs = append(*errs, fmt.Errorf("metadata %q is required", name))
				continue
			} else {
				continue
			}
		}
		unit := time.Millisecond
		if f.Tag.Get("unit") == "s" {
			unit = time.Second
		}
		if err := setValue(v.Field(i), strings.TrimSpace(raw), unit); err != nil {
			*errs = append(*errs, fmt.Errorf("metadata %q: %q %w", name, raw, err))
		}
	}
}

var durationType = reflect.TypeOf(time.Duration(0))

func setValue(f reflect.Value, raw string, unit time.Duration) error {
	if f.Kind() == reflect.Pointer {
		p := reflect.New(f.Type().Elem())
		if err := setValue(p.Elem(), raw, unit); err != nil {
			return err
		}
		f.Set(p)
		return nil
	}
	if f.Type() == durationType {
		d, err := parseDuration(raw, unit)
		if err != nil {
			return err
		}
		f.SetInt(int64(d))
		return nil
	}
	switch f.Kind() {
	case reflect.String:
		f.SetString(raw)
	case reflect.Bool:
		b, err := ParseBool(raw)
		if err != nil {
			return err
		}
		f.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, f.Type().Bits())
		if err != nil {
			return errors.New("is not a whole number")
		}
		f.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(raw, 10, f.Type().Bits())
		if err != nil {
			return errors.New("is not a non-negative whole number")
		}
		f.SetUint(n)
	case reflect.Float32, reflect.Float64:
		n, err := strconv.ParseFloat(raw, f.Type().Bits())
		if err != nil {
			return errors.New("is not a number")
		}
		f.SetFloat(n)
	case reflect.Slice:
		if f.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("cannot decode into %s", f.Type())
		}
		var items []string
		for _, s := range strings.Split(raw, ",") {
			if s = strings.TrimSpace(s); s != "" {
				items = append(items, s)
			}
		}
		f.Set(reflect.ValueOf(items))
	default:
		return fmt.Errorf("cannot decode into %s", f.Type())
	}
	return nil
}

// ParseBool reads the boolean forms Dapr accepts in metadata.
func ParseBool(raw string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(raw)) {
	case "true", "1", "yes", "y", "on", "t":
		return true, nil
	case "false", "0", "no", "n", "off", "f", "":
		return false, nil
	}
	return false, errors.New("is not a boolean (true or false)")
}

// ParseDuration reads a Go duration ("5s", "1m30s"), or a bare whole number of
// milliseconds.
func ParseDuration(raw string) (time.Duration, error) { return parseDuration(raw, time.Millisecond) }

func parseDuration(raw string, unit time.Duration) (time.Duration, error) {
	if n, err := strconv.ParseInt(raw, 10, 64); err == nil {
		return time.Duration(n) * unit, nil
	}
	d, err := time.ParseDuration(raw)
	if err != nil {
		if unit == time.Second {
			return 0, errors.New(`is not a duration such as "5s" or a number of seconds`)
		}
		return 0, errors.New(`is not a duration such as "5s" or a number of milliseconds`)
	}
	return d, nil
}
