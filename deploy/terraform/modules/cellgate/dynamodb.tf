# The registry table, as `cellgate registry init` creates it (src/placement/dynamo/write.rs,
# Registry::init): one string hash key `pk`, no sort key, no secondary index (every read is by
# key, a scan, or the change log), on-demand billing, TTL on `expires_at` (the `change#` items
# expire after a day), and, with --streams, a NEW_IMAGE stream.
#
# After the first apply, run `cellgate registry init --table <name>` once with the operator
# role: the table exists so it only seeds the `epoch` item (epoch = 0), which every write's
# transaction is conditional on. Terraform does not write that item itself: a table item
# resource would reset the epoch to 0 when it drifts, on the next apply.

resource "aws_dynamodb_table" "registry" {
  name         = var.registry_table_name
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "pk"

  attribute {
    name = "pk"
    type = "S"
  }

  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  stream_enabled   = var.registry_stream_enabled
  stream_view_type = var.registry_stream_enabled ? "NEW_IMAGE" : null

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = local.kms_key_arn
  }

  deletion_protection_enabled = var.registry_deletion_protection

  tags = local.tags
}
