#!/usr/bin/python3
"""Independent reader of the oracle fixtures: decodes cases.pb / expected.pb exactly as a consumer
would (proto semantics only: empty/single/pair geometry lists, optional bias/scale/pre_activation/
labels/weight_decay), recomputes every non-confident case with float64 autograd and checks it
against expected (1e-11 relative, no absolute floor; values that are zero by construction must be
exactly zero); on confident cases recomputes the classifier terms (Tr H_V, kappa_V) with mpmath at
50 digits from the float64 pooled features. Checks order, ids, max_logit_gap and confident flags of all
cases.

    /usr/bin/python3 scripts/oracle/verify.py [--dir src/test/resources/oracle]
"""
import argparse, atexit, math, shutil, subprocess, sys, tempfile
from pathlib import Path
import numpy as np, torch, torch.nn.functional as F
from mpmath import mp
REPO = Path(__file__).resolve().parents[2]
ap = argparse.ArgumentParser()
ap.add_argument("--dir", default=str(REPO / "src/test/resources/oracle"))
args = ap.parse_args()
_tmp = tempfile.mkdtemp(prefix="flatmon_proto_")
atexit.register(shutil.rmtree, _tmp, True)
subprocess.run(["/usr/bin/protoc", "-I", str(REPO / "proto"), "--python_out", _tmp]
               + sorted(str(p.relative_to(REPO / "proto")) for p in (REPO / "proto/flatmon/v1").glob("*.proto")),
               check=True, cwd=str(REPO / "proto"))
sys.path.insert(0, _tmp)
from flatmon.v1 import telemetry_pb2, oracle_pb2
from google.protobuf.internal.decoder import _DecodeVarint32
torch.set_num_threads(1)
def rd(path, cls):
    data=open(path,'rb').read(); out=[]; pos=0
    while pos<len(data):
        n,pos=_DecodeVarint32(data,pos); m=cls(); m.ParseFromString(data[pos:pos+n]); out.append(m); pos+=n
    return out
def T(t):
    assert t.dtype==1
    return torch.from_numpy(np.frombuffer(t.data,dtype='<f4').reshape(tuple(t.shape)).astype(np.float64))
def pair(l,default):
    return tuple(default) if len(l)==0 else ((l[0],l[0]) if len(l)==1 else (l[0],l[1]))
recs=rd(Path(args.dir) / 'cases.pb', telemetry_pb2.TelemetryRecord)
exps=rd(Path(args.dir) / 'expected.pb', oracle_pb2.OracleCase)
assert len(recs)==3*len(exps)
acts={1:lambda z,s:z,2:lambda z,s:torch.relu(z),3:lambda z,s:F.leaky_relu(z,s),4:lambda z,s:F.gelu(z),
      5:lambda z,s:F.gelu(z,approximate='tanh'),6:lambda z,s:F.silu(z),7:lambda z,s:torch.tanh(z)}
worst=0; nz=0; worst_conf=0; nconf=0
for i,e in enumerate(exps):
    ls=recs[3*i].layer_snapshot; ab=recs[3*i+1].activation_batch; md=recs[3*i+2].measurement_done
    assert recs[3*i].WhichOneof('record')=='layer_snapshot' and recs[3*i+1].WhichOneof('record')=='activation_batch' and recs[3*i+2].WhichOneof('record')=='measurement_done'
    assert ls.run_id==ab.run_id==md.run_id==e.case_id and ls.layer==ab.layer=='head' and ls.step==ab.step==md.step==1 and ab.split==1
    W=T(ls.kernel); C=W.shape[0]; Fx=T(ab.input)
    beta=T(ls.bias) if ls.HasField('bias') else None
    a=T(ls.scale) if ls.HasField('scale') else torch.ones(C)
    V=T(ls.classifier_weight); b=T(ls.classifier_bias) if ls.HasField('classifier_bias') else torch.zeros(V.shape[0])
    st=pair(ls.stride,(1,1)); pd=pair(ls.padding,(0,0)); dl=pair(ls.dilation,(1,1))
    y=torch.tensor(list(ab.labels) if len(ab.labels) else [0]*Fx.shape[0])
    act=acts[ls.activation.kind]; sl=ls.activation.negative_slope
    def pre(w): return a[None,:,None,None]*F.conv2d(Fx,w.reshape(W.shape),beta,st,pd,dl)
    r=T(ab.pre_activation)-pre(W.reshape(-1)) if ab.HasField('pre_activation') else 0
    def head(w): return act(pre(w)+r,sl).mean((2,3))
    def L(w): return F.cross_entropy(head(w)@V.T+b,y)
    H=torch.autograd.functional.hessian(L,W.reshape(-1).clone())
    d=W[0].numel(); H4=H.reshape(C,d,C,d); Tm=torch.einsum('ajbj->ab',H4)
    Wf=W.reshape(C,d); rho2=(Fx**2).mean((0,2,3)).repeat_interleave(d//W.shape[1])
    Tn=torch.einsum('ajbj,j->ab',H4,torch.where(rho2>0,1/rho2,torch.zeros_like(rho2)))
    got=dict(hessian_trace=float(torch.trace(Tm)), relative_flatness=float(((Wf@Wf.T)*Tm).sum()),
             relative_flatness_normalized=float(((Wf*rho2)@Wf.T*Tn).sum()),
             hessian_max_eigenvalue=float(torch.linalg.eigvalsh(H).max()))
    h=head(W.reshape(-1)).detach(); o=h@V.T+b; s=torch.softmax(o,1)
    u=s@V
    got['classifier_hessian_trace']=float(((h*h).sum(1)*(s*(1-s)).sum(1)).mean())
    got['classifier_relative_flatness']=float(((h*h).sum(1)*(s*((V[None]-u[:,None])**2).sum(2)).sum(1)).mean())
    if len(ab.labels):
        got['loss']=float(F.cross_entropy(o,y)); got['accuracy']=float((o.argmax(1)==y).double().mean())
    else:
        assert math.isnan(e.expected.loss) and math.isnan(e.expected.accuracy)
    alpha=ls.weight_decay if ls.HasField('weight_decay') else 0.0
    got['weight_decay_trace']=2*alpha*C*d; got['weight_decay_relative_flatness']=2*alpha*d*float((W**2).sum())
    gaps=o.sort(1).values; gap=float((gaps[:,-1]-gaps[:,-2]).max())
    assert abs(gap-e.max_logit_gap)<1e-9 and e.confident==(gap>10)
    if e.confident:
        # classifier terms of a confident case (eq. 10) at 50 digits from the float64 h: Tr H_V and
        # kappa_V are well conditioned in h (relative error ~ |o| eps), so this checks the mpmath values
        # to ~1e-13 without the cancellation that float64 1 - s_m would bring.
        mp.dps=50; trv=kv=mp.mpf(0)
        for n in range(h.shape[0]):
            hn=[mp.mpf(float(t)) for t in h[n]]; Vm=[[mp.mpf(float(t)) for t in row] for row in V]
            on=[mp.fsum(Vm[k][c]*hn[c] for c in range(len(hn)))+mp.mpf(float(b[k])) for k in range(len(Vm))]
            mx=max(on); ex=[mp.exp(t-mx) for t in on]; Z=mp.fsum(ex); sn=[t/Z for t in ex]
            ub=[mp.fsum(sn[k]*Vm[k][c] for k in range(len(Vm))) for c in range(len(hn))]
            hh=mp.fsum(t*t for t in hn)
            trv+=hh*mp.fsum(sn[k]*(1-sn[k]) for k in range(len(Vm)))
            kv+=hh*mp.fsum(sn[k]*mp.fsum((Vm[k][c]-ub[c])**2 for c in range(len(hn))) for k in range(len(Vm)))
        for k,v in (('classifier_hessian_trace',float(trv/h.shape[0])),('classifier_relative_flatness',float(kv/h.shape[0]))):
            ev=getattr(e.expected,k); err=abs(v-ev)/abs(ev); worst_conf=max(worst_conf,err)
            assert err<1e-11,(e.case_id,k,v,ev,err)
        nconf+=1
        continue
    nz+=1
    for k,v in got.items():
        ev=getattr(e.expected,k)
        if ev==0.0:                      # zero by construction (no weight decay): must be exactly zero
            assert v==0.0,(e.case_id,k,v,ev); continue
        err=abs(v-ev)/abs(ev)            # relative, no absolute floor
        worst=max(worst,err)
        assert err<1e-11,(e.case_id,k,v,ev,err)
print('verified',len(exps),'cases; non-confident recomputed from the .pb alone:',nz,'worst',worst,
      '; classifier terms of confident cases at 50 digits:',nconf,'worst',worst_conf)
