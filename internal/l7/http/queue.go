package http

import "github.com/flowlens/flowlens/internal/l7"

// queue holds the requests waiting for their responses, oldest first, at
// most l7.MaxPending of them. Past that, requests are not kept but still
// take their place in line as phantoms, so that responses keep pairing
// with the right requests: a phantom's response is skipped.
//
//	entries[head:]  phantoms
//	oldest ... newest, then n requests that were not kept
//
// Once there are phantoms, every new request is one until they drain.
type queue struct {
	entries   []pending
	head      int
	phantoms  int
	phantomNS uint64 // the newest phantom's NS
}

func (q *queue) len() int { return len(q.entries) - q.head }

// push queues r, or a phantom in its place (and returns false).
func (q *queue) push(r pending) bool {
	if q.phantoms > 0 || q.len() >= l7.MaxPending {
		q.phantoms++
		q.phantomNS = r.ns
		return false
	}
	if q.head > 0 && len(q.entries) == cap(q.entries) {
		n := copy(q.entries, q.entries[q.head:])
		clear(q.entries[n:])
		q.entries, q.head = q.entries[:n], 0
	}
	q.entries = append(q.entries, r)
	return true
}

// pop takes the oldest request; known is false when there was none, or
// it was a phantom.
func (q *queue) pop() (r pending, known bool) {
	if q.len() > 0 {
		r = q.entries[q.head]
		q.entries[q.head] = pending{}
		if q.head++; q.head == len(q.entries) {
			q.entries, q.head = q.entries[:0], 0
		}
		return r, true
	}
	if q.phantoms > 0 {
		q.phantoms--
	}
	return pending{}, false
}

// expire takes the oldest request if it was sent before ns; phantoms all
// go once the newest of them is that old.
func (q *queue) expire(ns uint64) (pending, bool) {
	if q.len() > 0 {
		if q.entries[q.head].ns >= ns {
			return pending{}, false
		}
		return q.pop()
	}
	if q.phantoms > 0 && q.phantomNS < ns {
		q.phantoms = 0
	}
	return pending{}, false
}

// clear forgets every request and returns how many were kept ones.
func (q *queue) clear() int {
	n := q.len()
	clear(q.entries)
	q.entries, q.head, q.phantoms = q.entries[:0], 0, 0
	return n
}
