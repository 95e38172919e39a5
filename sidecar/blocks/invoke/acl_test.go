package invoke

import (
	"strings"
	"testing"

	daprv1alpha1 "github.com/outrigger-dev/outrigger/apis/dapr/v1alpha1"
)

func TestACL(t *testing.T) {
	spec := &daprv1alpha1.AccessControlSpec{
		DefaultAction: "deny",
		TrustDomain:   "public",
		Policies: []daprv1alpha1.AppPolicySpec{
			{AppID: "app1", DefaultAction: "allow", TrustDomain: "public", Namespace: "default",
				Operations: []daprv1alpha1.AppOperationAction{
					{Name: "/op1", HTTPVerb: []string{"POST", "GET"}, Action: "deny"},
					{Name: "/op2/*", HTTPVerb: []string{"*"}, Action: "deny"},
					{Name: "/op3/a/*", HTTPVerb: []string{"PUT"}, Action: "allow"},
					{Name: "/op4/**", HTTPVerb: []string{"*"}, Action: "deny"},
					{Name: "/ord*/x", HTTPVerb: []string{"*"}, Action: "deny"},
				}},
			{AppID: "app2", DefaultAction: "deny", TrustDomain: "domain1", Namespace: "ns1",
				Operations: []daprv1alpha1.AppOperationAction{
					{Name: "/public/**", HTTPVerb: []string{"*"}, Action: "allow"},
					{Name: "/grpc.Service/Method", Action: "allow"},
				}},
			{AppID: "app3", TrustDomain: "public", Namespace: "default",
				Operations: []daprv1alpha1.AppOperationAction{
					{Name: "/x", HTTPVerb: []string{"GET"}, Action: "allow"},
				}},
		},
	}
	acl, err := ParseACL(spec, true)
	if err != nil {
		t.Fatal(err)
	}
	grpcACL, err := ParseACL(spec, false)
	if err != nil {
		t.Fatal(err)
	}
	app1 := Caller{AppID: "app1", Namespace: "default"}
	app2 := Caller{AppID: "app2", Namespace: "ns1", TrustDomain: "domain1"}
	cases := []struct {
		name   string
		acl    *ACL
		caller Caller
		op     string
		verb   string
		http   bool
		allow  bool
	}{
		{"unknown caller gets the global default", acl, Caller{AppID: "x", Namespace: "default"}, "op1", "GET", true, false},
		{"policy default", acl, app1, "other", "GET", true, true},
		{"operation and verb deny", acl, app1, "op1", "POST", true, false},
		{"operation, other verb: policy default", acl, app1, "op1", "PUT", true, true},
		{"name is a prefix", acl, app1, "op1/sub", "GET", true, false},
		{"case-insensitive for HTTP", acl, app1, "OP1", "GET", true, false},
		{"path cleaned", acl, app1, "//op1/./", "GET", true, false},
		{"* matches one last segment", acl, app1, "op2/a", "GET", true, false},
		{"* not in the middle", acl, app1, "op2/a/b", "GET", true, true},
		{"/a/* matches /a", acl, app1, "op2", "GET", true, false},
		{"** matches below", acl, app1, "op4/a/b/c", "DELETE", true, false},
		{"glob inside a segment", acl, app1, "orders/x", "GET", true, false},
		{"glob inside a segment, no match", acl, app1, "items/x", "GET", true, true},
		{"trust domain and namespace must match", acl, Caller{AppID: "app2", Namespace: "ns1"}, "public/a", "GET", true, false},
		{"other trust domain", acl, app2, "public/a", "GET", true, true},
		{"no operation: policy deny", acl, app2, "private", "GET", true, false},
		{"gRPC ignores verbs", grpcACL, app2, "/grpc.Service/Method", "", false, true},
		{"HTTP app without a verb takes the policy default", acl, app2, "public/a", "", true, false},
		{"HTTP app without a verb, empty policy default denies", acl, Caller{AppID: "app3", Namespace: "default"}, "x", "", true, false},
		{"empty policy default falls back to global", acl, Caller{AppID: "app3", Namespace: "default"}, "y", "GET", true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ok, msg := tc.acl.Check(tc.caller, tc.op, tc.verb, tc.http)
			if ok != tc.allow {
				t.Fatalf("allowed=%v, want %v (%s)", ok, tc.allow, msg)
			}
			if !ok && !strings.Contains(msg, "access control policy has denied access to id: spiffe://") {
				t.Errorf("message %q", msg)
			}
		})
	}
}

func TestParseACL(t *testing.T) {
	if acl, err := ParseACL(nil, true); acl != nil || err != nil {
		t.Errorf("nil spec: %v %v", acl, err)
	}
	if acl, err := ParseACL(&daprv1alpha1.AccessControlSpec{}, true); acl != nil || err != nil {
		t.Errorf("empty spec: %v %v", acl, err)
	}
	// Dapr: a trust domain alone (no policies) denies by default.
	acl, err := ParseACL(&daprv1alpha1.AccessControlSpec{TrustDomain: "public"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := acl.Check(Caller{AppID: "a"}, "x", "GET", true); ok {
		t.Error("no default action allowed a call")
	}
	var nilACL *ACL
	if ok, _ := nilACL.Check(Caller{}, "x", "GET", true); !ok {
		t.Error("nil ACL denied")
	}
	_, err = ParseACL(&daprv1alpha1.AccessControlSpec{DefaultAction: "permit", Policies: []daprv1alpha1.AppPolicySpec{
		{AppID: "a", Operations: []daprv1alpha1.AppOperationAction{{Name: "/x", Action: "maybe"}}},
	}}, true)
	for _, want := range []string{`defaultAction "permit"`, "policies[0].trustDomain: required", "policies[0].namespace: required",
		`operations[0].action "maybe"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}
