package main

import "fmt"

func main() {
	fmt.Println("Hello from a static Go binary, built by kiln!")
}
