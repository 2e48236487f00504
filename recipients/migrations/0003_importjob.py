"""Import jobs: one row per file imported into a list (who, when, mode, DM types, counts)."""

import django.db.models.deletion
import recipients.models
import uuid
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('consent', '0001_initial'),
        ('mlm', '0001_initial'),
        ('recipients', '0002_search_indexes'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='ImportJob',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('code', models.UUIDField(default=uuid.uuid4, editable=False, unique=True)),
                ('actor_label', models.CharField(max_length=150)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('started_at', models.DateTimeField(blank=True, null=True)),
                ('finished_at', models.DateTimeField(blank=True, null=True)),
                ('file', models.FileField(blank=True, max_length=400, upload_to=recipients.models._import_upload_to)),
                ('file_name', models.CharField(max_length=255)),
                ('file_size', models.BigIntegerField(default=0)),
                ('file_format', models.CharField(help_text='csv or xlsx', max_length=4)),
                ('encoding', models.CharField(blank=True, max_length=20)),
                ('encoding_detected', models.BooleanField(default=True)),
                ('delimiter', models.CharField(blank=True, max_length=1)),
                ('has_header', models.BooleanField(default=True)),
                ('columns', models.JSONField(blank=True, default=list, help_text='Column names of the file.')),
                ('mapping', models.JSONField(blank=True, default=list, help_text='What each column becomes.')),
                ('default_category', models.CharField(blank=True, max_length=10)),
                ('mode', models.CharField(choices=[('add', 'Add to the list, granting nothing'), ('grant', 'Add or update recipients and grant the DM types ticked'), ('opt_out', 'Opt out: withdraw the DM types ticked for the addresses in the file'), ('sync', 'Directory sync: the list becomes the people in the file')], default='add', max_length=10)),
                ('attested', models.BooleanField(default=False)),
                ('evidence', models.TextField(blank=True)),
                ('status', models.CharField(choices=[('uploaded', 'Uploaded, not started'), ('queued', 'Waiting for a worker'), ('reading', 'Reading the file'), ('applying', 'Saving'), ('succeeded', 'Done'), ('failed', 'Failed: nothing was changed')], default='uploaded', max_length=10)),
                ('error', models.TextField(blank=True)),
                ('rows_total', models.PositiveIntegerField(blank=True, null=True)),
                ('rows_read', models.PositiveIntegerField(default=0)),
                ('created_count', models.PositiveIntegerField(default=0)),
                ('updated_count', models.PositiveIntegerField(default=0)),
                ('added_count', models.PositiveIntegerField(default=0)),
                ('removed_count', models.PositiveIntegerField(default=0)),
                ('granted_count', models.PositiveIntegerField(default=0)),
                ('withdrawn_count', models.PositiveIntegerField(default=0)),
                ('duplicate_count', models.PositiveIntegerField(default=0)),
                ('invalid_count', models.PositiveIntegerField(default=0)),
                ('suppressed_count', models.PositiveIntegerField(default=0)),
                ('unknown_count', models.PositiveIntegerField(default=0)),
                ('rejected_file', models.FileField(blank=True, max_length=400, upload_to=recipients.models._import_upload_to)),
                ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('dm_types', models.ManyToManyField(blank=True, related_name='+', to='consent.dmtype')),
                ('recipient_list', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='import_jobs', to='recipients.recipientlist')),
                ('unit', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='mlm.senderunit')),
            ],
            options={
                'ordering': ['-created_at', '-id'],
                'indexes': [models.Index(fields=['recipient_list', '-created_at'], name='importjob_list')],
            },
        ),
    ]
