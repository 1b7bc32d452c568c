"""Fleet sync: the stored sessions copied to S3 whenever the network is up (`edgevoice sync`).

`state` (what S3 confirmed) and `plan` (what changed) need nothing beyond the standard library, so the store
and `edgevoice sessions` use them without loading boto3; `bucket` and `service` are the network side.
"""
