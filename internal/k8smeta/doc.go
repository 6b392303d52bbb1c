// Package k8smeta feeds an identity.Index from the Kubernetes API server.
// It is the only package that imports client-go.
//
// Start runs one informer per resource the index needs, all read-only
// (list and watch, nothing else; see deploy/rbac.yaml):
//
//	pods               -> Index.UpsertPod / DeletePod
//	services           -> Index.UpsertService / DeleteService
//	nodes              -> Index.UpsertNode / DeleteNode
//	replicasets, jobs  -> Index.UpsertOwner / DeleteOwner (Deployment, CronJob)
//	endpointslices of default/kubernetes (namespace default only)
//	                   -> Index.SetAPIServerEndpoints
//
// Each informer transforms objects on arrival to the few fields identity
// uses plus the name and resource version the informer itself needs, so
// the cache holds no full objects. Handlers stamp each event with its
// receipt time, which is what identity's address history is kept in.
// Pods that Succeeded or Failed are fed without addresses: their status
// keeps the address, but it is free for the next pod.
//
// Where the agent itself reaches the API server (the client
// configuration's host, resolved) goes to Index.SetAPIServer.
//
// # Staleness
//
// When the API server goes away, informers keep their cache and retry with
// backoff, but they say nothing while they wait. So a probe GETs /readyz
// every ProbeInterval (readable by any authenticated identity through the
// default system:public-info-viewer role) with a timeout of one interval:
// Status().Stale turns true at the first failed probe, within about two
// intervals of the API server going away (a terminating kube-apiserver
// stops listening within half a second of SIGTERM, even though with watches
// open its process may linger for many seconds), and false at the first
// answer. The index keeps
// resolving from the last known state meanwhile. The informers' own errors
// cannot serve for this: a reflector whose watch is refused retries it
// with backoff and reports nothing. What it does report (a forbidden
// list, a server error) is counted in Status().WatchErrors and logged.
//
// Client-go's own logs go to the slog logger given to Start, through
// klog's contextual logger.
package k8smeta
