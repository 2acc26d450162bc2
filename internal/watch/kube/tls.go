package kube

import (
	"cmp"
	"context"
	"log/slog"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/shard-proxy/shard-proxy/internal/watch"
)

// defaultDomain is the cluster domain of a TLS shard's name when none is
// given.
const defaultDomain = "cluster.local"

// serviceSaysTLS reads the Service's AnnotationShardTLS. A Service that
// cannot be read (not allowed, not there) says nothing: the ports'
// appProtocol still can.
func (k *Source) serviceSaysTLS(ctx context.Context, log *slog.Logger) bool {
	svc, err := k.Client.CoreV1().Services(k.Namespace).Get(ctx, k.Service, metav1.GetOptions{})
	switch {
	case apierrors.IsForbidden(err):
		log.Warn("not allowed to read the Service; its annotation "+AnnotationShardTLS+" is not seen (grant get on services)", "error", err)
		return false
	case err != nil:
		log.Warn("reading the Service for its annotation "+AnnotationShardTLS, "error", err)
		return false
	}
	return strings.EqualFold(svc.Annotations[AnnotationShardTLS], "true")
}

// nameTLS marks every shard TLS when all is set, and gives each TLS shard
// the name its certificate must hold.
func (k *Source) nameTLS(topo *watch.Topology, all bool) {
	for i := range topo.Shards {
		sh := &topo.Shards[i]
		sh.TLS = sh.TLS || all
		if sh.TLS {
			sh.TLSName = watch.ServerName(k.ServerName, watch.NameParts{Pod: sh.Name, Ordinal: sh.Ordinal,
				StatefulSet: k.statefulSet(), Service: k.Service, Namespace: k.Namespace, Domain: cmp.Or(k.Domain, defaultDomain)})
		}
	}
}
