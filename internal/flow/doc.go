// Package flow is flowlens' domain model, shared by every stage of the data
// path and free of I/O: what the kernel reports about a socket (TCPSocket,
// TCPEnd, UDPConversation) and the flow Record the agent emits per
// connection per interval, whose JSON form is the public, stable schema.
package flow
