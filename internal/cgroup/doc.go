// Package cgroup finds the cgroup v2 hierarchy and names what a socket's
// cgroup belongs to. Sockets carry the cgroup of the process that created
// them, and accepted sockets inherit their listener's, so the cgroup is the
// one attribution that is right on both sides of a connection even in
// softirq context, where the current process means nothing.
package cgroup
