// Package helloworld holds the seed's sample apps, embedded so that
// `outrigger dev --demo` can run them from any directory.
package helloworld

import _ "embed"

// NodeApp is node/app.js, the seed's nodeapp.
//
//go:embed node/app.js
var NodeApp []byte

// PythonApp is python/app.py, the seed's pythonapp.
//
//go:embed python/app.py
var PythonApp []byte
