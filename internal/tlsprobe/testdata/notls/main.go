// Command notls is a Go program without crypto/tls: not a target.
package main

import "fmt"

func main() { fmt.Println("hello") }
