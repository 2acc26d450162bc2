package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/shard-proxy/shard-proxy/test/kubeenv"
)

// testRBAC: the proxy runs as the ServiceAccount of deploy/statefulset,
// bound to that directory's Role, with a TokenRequest token: it becomes
// ready, routes, and follows a scale, so the Role is sufficient. The Role
// grants only get, list and watch on statefulsets and endpointslices, and
// get on services (the shard-proxy.io/shard-tls annotation, read once at
// start), and the API server's authorizer agrees.
func testRBAC(t *testing.T, env *kubeenv.Env) {
	var (
		sa      corev1.ServiceAccount
		role    rbacv1.Role
		binding rbacv1.RoleBinding
	)
	decodeManifest(t, "proxy-serviceaccount.yaml", &sa)
	decodeManifest(t, "proxy-role.yaml", &role)
	decodeManifest(t, "proxy-rolebinding.yaml", &binding)
	checkRoleRules(t, role.Rules)
	if binding.RoleRef.Kind != "Role" || binding.RoleRef.Name != role.Name {
		t.Errorf("RoleBinding refers to %s %q; want Role %q", binding.RoleRef.Kind, binding.RoleRef.Name, role.Name)
	}
	if !slices.ContainsFunc(binding.Subjects, func(s rbacv1.Subject) bool {
		return s.Kind == rbacv1.ServiceAccountKind && s.Name == sa.Name
	}) {
		t.Errorf("RoleBinding subjects %+v do not include ServiceAccount %q", binding.Subjects, sa.Name)
	}

	f := newFixture(t, env, 3)
	ctx := context.Background()
	sa.Namespace, role.Namespace, binding.Namespace = f.ns, f.ns, f.ns
	if _, err := env.Client.CoreV1().ServiceAccounts(f.ns).Create(ctx, &sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.RbacV1().Roles(f.ns).Create(ctx, &role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.RbacV1().RoleBindings(f.ns).Create(ctx, &binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	checkAccess(t, env, f.ns, sa.Name)

	// Without the Role the proxy says what is missing and never turns
	// ready: the success below is the Role's doing.
	bare := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "no-role", Namespace: f.ns}}
	if _, err := env.Client.CoreV1().ServiceAccounts(f.ns).Create(ctx, bare, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	denied := launchProxy(t, "no-role", env.TokenKubeconfig(t, env.ServiceAccountToken(t, f.ns, bare.Name), f.ns), f.ns)
	rec := denied.waitLog(t, proxyTimeout, "not allowed to watch; grant get, list and watch on statefulsets and endpointslices")
	if err := denied.readyz(ctx); err == nil {
		t.Errorf("proxy without the Role is ready")
	}
	t.Logf("without the Role: %v", rec["error"])
	denied.stop(t)

	kubeconfig := env.TokenKubeconfig(t, env.ServiceAccountToken(t, f.ns, sa.Name), f.ns)
	p := startProxy(t, "p", kubeconfig, f.ns)
	p.waitShards(t, proxyTimeout, "3 ready shards", f.allReady(3))
	keys := sampleKeys(200)
	f.sweep(t, p, keys, owners(t, 3, keys))

	env.Scale(t, f.ns, "web", 4)
	f.waitPods(t, 4)
	p.waitShards(t, proxyTimeout, "4 ready shards", f.allReady(4))
	f.sweep(t, p, keys, owners(t, 4, keys))

	if strings.Contains(p.logs.String(), "not allowed to watch") {
		t.Errorf("the proxy was refused access:\n%s", p.logs.Tail(20))
	}
}

// checkRoleRules asserts that rules grant get, list and watch on
// apps/statefulsets and discovery.k8s.io/endpointslices, and nothing else.
func checkRoleRules(t *testing.T, rules []rbacv1.PolicyRule) {
	t.Helper()
	allowedVerbs := []string{"get", "list", "watch"}
	granted := map[string][]string{} // group/resource -> verbs
	for i, r := range rules {
		if len(r.NonResourceURLs) > 0 || len(r.ResourceNames) > 0 {
			t.Errorf("rule %d: %+v: want no nonResourceURLs or resourceNames", i, r)
		}
		for _, v := range r.Verbs {
			if !slices.Contains(allowedVerbs, v) {
				t.Errorf("rule %d grants verb %q; want only get, list, watch", i, v)
			}
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				granted[g+"/"+res] = append(granted[g+"/"+res], r.Verbs...)
			}
		}
	}
	want := map[string][]string{
		"apps/statefulsets":               allowedVerbs,
		"discovery.k8s.io/endpointslices": allowedVerbs,
		"/services":                       {"get"},
	}
	for gr, verbs := range granted {
		w, ok := want[gr]
		if !ok {
			t.Errorf("the Role grants %v on %s; want only %v", verbs, gr, want)
			continue
		}
		for _, v := range verbs {
			if !slices.Contains(w, v) {
				t.Errorf("the Role grants %s on %s; want only %v there", v, gr, w)
			}
		}
	}
	for gr, verbs := range want {
		for _, v := range verbs {
			if !slices.Contains(granted[gr], v) {
				t.Errorf("the Role does not grant %s on %s", v, gr)
			}
		}
	}
}

// checkAccess asks the API server's authorizer what the ServiceAccount may
// do: what the proxy needs, in its namespace, and nothing around it.
func checkAccess(t *testing.T, env *kubeenv.Env, ns, sa string) {
	t.Helper()
	review := func(ctx context.Context, where, verb, group, resource string) (*authorizationv1.SubjectAccessReview, error) {
		return env.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
			Spec: authorizationv1.SubjectAccessReviewSpec{
				User:   "system:serviceaccount:" + ns + ":" + sa,
				Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
				ResourceAttributes: &authorizationv1.ResourceAttributes{
					Namespace: where, Verb: verb, Group: group, Resource: resource,
				},
			},
		}, metav1.CreateOptions{})
	}
	// The authorizer learns of new bindings from a watch: wait for it.
	kubeenv.Eventually(t, proxyTimeout, "the RoleBinding in force", func(ctx context.Context) error {
		got, err := review(ctx, ns, "list", "apps", "statefulsets")
		if err == nil && !got.Status.Allowed {
			err = fmt.Errorf("list statefulsets not allowed yet: %s", got.Status.Reason)
		}
		return err
	})
	for _, c := range []struct {
		ns, verb, group, resource string
		allowed                   bool
	}{
		{ns, "get", "apps", "statefulsets", true},
		{ns, "list", "apps", "statefulsets", true},
		{ns, "watch", "apps", "statefulsets", true},
		{ns, "get", "discovery.k8s.io", "endpointslices", true},
		{ns, "list", "discovery.k8s.io", "endpointslices", true},
		{ns, "watch", "discovery.k8s.io", "endpointslices", true},
		{ns, "get", "", "services", true},
		{ns, "list", "", "services", false},
		{ns, "watch", "", "services", false},
		{ns, "patch", "apps", "statefulsets", false},
		{ns, "update", "apps", "statefulsets", false},
		{ns, "delete", "apps", "statefulsets", false},
		{ns, "create", "discovery.k8s.io", "endpointslices", false},
		{ns, "list", "", "pods", false},
		{ns, "get", "", "secrets", false},
		{ns, "list", "", "endpoints", false},
		{"default", "list", "apps", "statefulsets", false},
		{"default", "list", "discovery.k8s.io", "endpointslices", false},
	} {
		got, err := review(context.Background(), c.ns, c.verb, c.group, c.resource)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status.Allowed != c.allowed {
			t.Errorf("%s %s.%s in %s: allowed %v; want %v (%s)", c.verb, c.resource, c.group, c.ns,
				got.Status.Allowed, c.allowed, got.Status.Reason)
		}
	}
}
