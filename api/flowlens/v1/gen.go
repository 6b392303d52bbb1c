// Package flowlensv1 is the generated Go of flowlens' protobuf API
// (flowlens.proto): the agent → hub ingest stream. `make proto` regenerates
// it with Debian's protoc and the generators pinned as tools in go.mod
// (`go tool -n` builds the pinned one and prints its path), so the output
// depends only on the source and those pins; CI checks it has not drifted.
package flowlensv1

//go:generate sh -c "protoc --plugin=protoc-gen-go=$(go tool -n protoc-gen-go) --plugin=protoc-gen-go-grpc=$(go tool -n protoc-gen-go-grpc) --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative flowlens.proto"
