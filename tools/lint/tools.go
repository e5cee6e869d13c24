// Package lint pins the linters make lint builds (tool directives in go.mod).
package lint
